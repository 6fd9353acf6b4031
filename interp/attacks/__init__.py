"""Adversarial attacks: FGSM / BIM / PGD at a given radius (:mod:`.linf`), the smallest radius
that fools the net (:mod:`.minimal_epsilon`), DeepFool (:mod:`.deepfool`) and robustness curves over
a dataset (:mod:`.robustness`), all on one step loop (:mod:`.steps`)."""
