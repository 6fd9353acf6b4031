"""Image synthesis by optimization: feature visualization (:mod:`.feature_vis`, with its parameters,
parameterization, transforms and regularizers), DeepDream (:mod:`.deepdream`) and deep feature
interpolation (:mod:`.feature_interpolation`)."""
