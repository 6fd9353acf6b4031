"""What the server keeps beyond one request: activation indexes on disk (:mod:`.index`), embedding
maps in memory (:mod:`.maps`), the datasets' images read as model inputs (:mod:`.datasets`), the
Ray engine of the index pass (:mod:`.ray`) and the training sets read once (:mod:`.training_sets`)."""
