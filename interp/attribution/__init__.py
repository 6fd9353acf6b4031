"""Attribution: which input pixels a class score depends on (saliency maps via captum, Grad-CAM,
guided backprop of one unit)."""
