"""Dataset views: the index pass (:mod:`.index`, reducing each batch with :mod:`.top_k`),
receptive-field crops of its entries (:mod:`.crops`) and nearest neighbours in its features
(:mod:`.neighbours`)."""
