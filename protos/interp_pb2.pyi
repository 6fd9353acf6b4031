from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Tensor(_message.Message):
    __slots__ = ("dtype", "shape", "data")
    class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        DTYPE_UNSPECIFIED: _ClassVar[Tensor.DType]
        FLOAT32: _ClassVar[Tensor.DType]
        UINT8: _ClassVar[Tensor.DType]
        INT64: _ClassVar[Tensor.DType]
        FLOAT64: _ClassVar[Tensor.DType]
        INT32: _ClassVar[Tensor.DType]
        UINT16: _ClassVar[Tensor.DType]
    DTYPE_UNSPECIFIED: Tensor.DType
    FLOAT32: Tensor.DType
    UINT8: Tensor.DType
    INT64: Tensor.DType
    FLOAT64: Tensor.DType
    INT32: Tensor.DType
    UINT16: Tensor.DType
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    dtype: Tensor.DType
    shape: _containers.RepeatedScalarFieldContainer[int]
    data: bytes
    def __init__(self, dtype: _Optional[_Union[Tensor.DType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., data: _Optional[bytes] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("encoded", "pixels")
    ENCODED_FIELD_NUMBER: _ClassVar[int]
    PIXELS_FIELD_NUMBER: _ClassVar[int]
    encoded: bytes
    pixels: Tensor
    def __init__(self, encoded: _Optional[bytes] = ..., pixels: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class PreprocessedInput(_message.Message):
    __slots__ = ("tensor", "png")
    TENSOR_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    tensor: Tensor
    png: bytes
    def __init__(self, tensor: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[bytes] = ...) -> None: ...

class ModelStamp(_message.Message):
    __slots__ = ("model", "pretrained", "weights_sha256", "request_id", "elapsed_ms", "model_source")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    PRETRAINED_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_SHA256_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_MS_FIELD_NUMBER: _ClassVar[int]
    MODEL_SOURCE_FIELD_NUMBER: _ClassVar[int]
    model: str
    pretrained: bool
    weights_sha256: str
    request_id: str
    elapsed_ms: float
    model_source: str
    def __init__(self, model: _Optional[str] = ..., pretrained: _Optional[bool] = ..., weights_sha256: _Optional[str] = ..., request_id: _Optional[str] = ..., elapsed_ms: _Optional[float] = ..., model_source: _Optional[str] = ...) -> None: ...

class Target(_message.Message):
    __slots__ = ("index", "label")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    index: int
    label: str
    def __init__(self, index: _Optional[int] = ..., label: _Optional[str] = ...) -> None: ...

class Prediction(_message.Message):
    __slots__ = ("index", "label", "probability")
    INDEX_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    index: int
    label: str
    probability: float
    def __init__(self, index: _Optional[int] = ..., label: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "code_name", "message", "field")
    CODE_FIELD_NUMBER: _ClassVar[int]
    CODE_NAME_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    code: int
    code_name: str
    message: str
    field: str
    def __init__(self, code: _Optional[int] = ..., code_name: _Optional[str] = ..., message: _Optional[str] = ..., field: _Optional[str] = ...) -> None: ...

class Progress(_message.Message):
    __slots__ = ("step", "total_steps", "objective", "elapsed_s", "stage", "preview_png", "queued_position", "preview_step")
    STEP_FIELD_NUMBER: _ClassVar[int]
    TOTAL_STEPS_FIELD_NUMBER: _ClassVar[int]
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_S_FIELD_NUMBER: _ClassVar[int]
    STAGE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_PNG_FIELD_NUMBER: _ClassVar[int]
    QUEUED_POSITION_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_STEP_FIELD_NUMBER: _ClassVar[int]
    step: int
    total_steps: int
    objective: float
    elapsed_s: float
    stage: str
    preview_png: bytes
    queued_position: int
    preview_step: int
    def __init__(self, step: _Optional[int] = ..., total_steps: _Optional[int] = ..., objective: _Optional[float] = ..., elapsed_s: _Optional[float] = ..., stage: _Optional[str] = ..., preview_png: _Optional[bytes] = ..., queued_position: _Optional[int] = ..., preview_step: _Optional[int] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class WeightsInfo(_message.Message):
    __slots__ = ("source", "path", "sha256", "canonical_name")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    SHA256_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_NAME_FIELD_NUMBER: _ClassVar[int]
    source: str
    path: str
    sha256: str
    canonical_name: str
    def __init__(self, source: _Optional[str] = ..., path: _Optional[str] = ..., sha256: _Optional[str] = ..., canonical_name: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "task", "input_shape", "num_classes", "pretrained", "weights", "status", "reason", "description", "dataset", "source", "class_sets")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[ModelInfo.Status]
        READY: _ClassVar[ModelInfo.Status]
        UNAVAILABLE: _ClassVar[ModelInfo.Status]
        LOADING: _ClassVar[ModelInfo.Status]
    STATUS_UNSPECIFIED: ModelInfo.Status
    READY: ModelInfo.Status
    UNAVAILABLE: ModelInfo.Status
    LOADING: ModelInfo.Status
    NAME_FIELD_NUMBER: _ClassVar[int]
    TASK_FIELD_NUMBER: _ClassVar[int]
    INPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    NUM_CLASSES_FIELD_NUMBER: _ClassVar[int]
    PRETRAINED_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    CLASS_SETS_FIELD_NUMBER: _ClassVar[int]
    name: str
    task: str
    input_shape: _containers.RepeatedScalarFieldContainer[int]
    num_classes: int
    pretrained: bool
    weights: WeightsInfo
    status: ModelInfo.Status
    reason: str
    description: str
    dataset: str
    source: str
    class_sets: bool
    def __init__(self, name: _Optional[str] = ..., task: _Optional[str] = ..., input_shape: _Optional[_Iterable[int]] = ..., num_classes: _Optional[int] = ..., pretrained: _Optional[bool] = ..., weights: _Optional[_Union[WeightsInfo, _Mapping]] = ..., status: _Optional[_Union[ModelInfo.Status, str]] = ..., reason: _Optional[str] = ..., description: _Optional[str] = ..., dataset: _Optional[str] = ..., source: _Optional[str] = ..., class_sets: _Optional[bool] = ...) -> None: ...

class DescribeModelRequest(_message.Message):
    __slots__ = ("model",)
    MODEL_FIELD_NUMBER: _ClassVar[int]
    model: str
    def __init__(self, model: _Optional[str] = ...) -> None: ...

class ReceptiveField(_message.Message):
    __slots__ = ("size", "jump", "start")
    SIZE_FIELD_NUMBER: _ClassVar[int]
    JUMP_FIELD_NUMBER: _ClassVar[int]
    START_FIELD_NUMBER: _ClassVar[int]
    size: int
    jump: int
    start: float
    def __init__(self, size: _Optional[int] = ..., jump: _Optional[int] = ..., start: _Optional[float] = ...) -> None: ...

class Layer(_message.Message):
    __slots__ = ("name", "aliases", "type", "output_shape", "channels", "receptive_field", "parameters", "has_kernels", "receptive_field_unknown")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    OUTPUT_SHAPE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    RECEPTIVE_FIELD_FIELD_NUMBER: _ClassVar[int]
    PARAMETERS_FIELD_NUMBER: _ClassVar[int]
    HAS_KERNELS_FIELD_NUMBER: _ClassVar[int]
    RECEPTIVE_FIELD_UNKNOWN_FIELD_NUMBER: _ClassVar[int]
    name: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    type: str
    output_shape: _containers.RepeatedScalarFieldContainer[int]
    channels: int
    receptive_field: ReceptiveField
    parameters: int
    has_kernels: bool
    receptive_field_unknown: bool
    def __init__(self, name: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., type: _Optional[str] = ..., output_shape: _Optional[_Iterable[int]] = ..., channels: _Optional[int] = ..., receptive_field: _Optional[_Union[ReceptiveField, _Mapping]] = ..., parameters: _Optional[int] = ..., has_kernels: _Optional[bool] = ..., receptive_field_unknown: _Optional[bool] = ...) -> None: ...

class Preprocessing(_message.Message):
    __slots__ = ("channels", "resize_shorter", "crop", "mean", "std", "convention")
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    RESIZE_SHORTER_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    MEAN_FIELD_NUMBER: _ClassVar[int]
    STD_FIELD_NUMBER: _ClassVar[int]
    CONVENTION_FIELD_NUMBER: _ClassVar[int]
    channels: int
    resize_shorter: int
    crop: int
    mean: _containers.RepeatedScalarFieldContainer[float]
    std: _containers.RepeatedScalarFieldContainer[float]
    convention: str
    def __init__(self, channels: _Optional[int] = ..., resize_shorter: _Optional[int] = ..., crop: _Optional[int] = ..., mean: _Optional[_Iterable[float]] = ..., std: _Optional[_Iterable[float]] = ..., convention: _Optional[str] = ...) -> None: ...

class DescribeModelResponse(_message.Message):
    __slots__ = ("model", "layers", "labels", "preprocessing", "default_gradcam_layer")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PREPROCESSING_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_GRADCAM_LAYER_FIELD_NUMBER: _ClassVar[int]
    model: ModelInfo
    layers: _containers.RepeatedCompositeFieldContainer[Layer]
    labels: _containers.RepeatedScalarFieldContainer[str]
    preprocessing: Preprocessing
    default_gradcam_layer: str
    def __init__(self, model: _Optional[_Union[ModelInfo, _Mapping]] = ..., layers: _Optional[_Iterable[_Union[Layer, _Mapping]]] = ..., labels: _Optional[_Iterable[str]] = ..., preprocessing: _Optional[_Union[Preprocessing, _Mapping]] = ..., default_gradcam_layer: _Optional[str] = ...) -> None: ...

class ClassifyRequest(_message.Message):
    __slots__ = ("model", "image", "top_k", "images", "include_input")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INPUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    image: Image
    top_k: int
    images: _containers.RepeatedCompositeFieldContainer[Image]
    include_input: bool
    def __init__(self, model: _Optional[str] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., top_k: _Optional[int] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., include_input: _Optional[bool] = ...) -> None: ...

class ClassifyResponse(_message.Message):
    __slots__ = ("stamp", "predictions", "input", "logits", "items", "error")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    LOGITS_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    input: PreprocessedInput
    logits: Tensor
    items: _containers.RepeatedCompositeFieldContainer[ClassifyResponse]
    error: ItemError
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., input: _Optional[_Union[PreprocessedInput, _Mapping]] = ..., logits: _Optional[_Union[Tensor, _Mapping]] = ..., items: _Optional[_Iterable[_Union[ClassifyResponse, _Mapping]]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class ActivationsRequest(_message.Message):
    __slots__ = ("model", "image", "layers", "top_k", "include_tensors", "images", "include_input", "include_pngs")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_TENSORS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INPUT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PNGS_FIELD_NUMBER: _ClassVar[int]
    model: str
    image: Image
    layers: _containers.RepeatedScalarFieldContainer[str]
    top_k: int
    include_tensors: bool
    images: _containers.RepeatedCompositeFieldContainer[Image]
    include_input: bool
    include_pngs: bool
    def __init__(self, model: _Optional[str] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., layers: _Optional[_Iterable[str]] = ..., top_k: _Optional[int] = ..., include_tensors: _Optional[bool] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., include_input: _Optional[bool] = ..., include_pngs: _Optional[bool] = ...) -> None: ...

class LayerActivation(_message.Message):
    __slots__ = ("layer", "requested", "activation", "channel_mean", "channel_max", "top_channels", "grid_png")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    REQUESTED_FIELD_NUMBER: _ClassVar[int]
    ACTIVATION_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_MEAN_FIELD_NUMBER: _ClassVar[int]
    CHANNEL_MAX_FIELD_NUMBER: _ClassVar[int]
    TOP_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    GRID_PNG_FIELD_NUMBER: _ClassVar[int]
    layer: str
    requested: str
    activation: Tensor
    channel_mean: Tensor
    channel_max: Tensor
    top_channels: _containers.RepeatedScalarFieldContainer[int]
    grid_png: bytes
    def __init__(self, layer: _Optional[str] = ..., requested: _Optional[str] = ..., activation: _Optional[_Union[Tensor, _Mapping]] = ..., channel_mean: _Optional[_Union[Tensor, _Mapping]] = ..., channel_max: _Optional[_Union[Tensor, _Mapping]] = ..., top_channels: _Optional[_Iterable[int]] = ..., grid_png: _Optional[bytes] = ...) -> None: ...

class ActivationsResponse(_message.Message):
    __slots__ = ("stamp", "input", "layers", "resolved_top_k", "prediction", "items", "error")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_TOP_K_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    input: PreprocessedInput
    layers: _containers.RepeatedCompositeFieldContainer[LayerActivation]
    resolved_top_k: int
    prediction: Prediction
    items: _containers.RepeatedCompositeFieldContainer[ActivationsResponse]
    error: ItemError
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., input: _Optional[_Union[PreprocessedInput, _Mapping]] = ..., layers: _Optional[_Iterable[_Union[LayerActivation, _Mapping]]] = ..., resolved_top_k: _Optional[int] = ..., prediction: _Optional[_Union[Prediction, _Mapping]] = ..., items: _Optional[_Iterable[_Union[ActivationsResponse, _Mapping]]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class KernelsRequest(_message.Message):
    __slots__ = ("model", "layer")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    model: str
    layer: str
    def __init__(self, model: _Optional[str] = ..., layer: _Optional[str] = ...) -> None: ...

class KernelsResponse(_message.Message):
    __slots__ = ("stamp", "layer", "weights", "bias", "rgb", "grid_png")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    WEIGHTS_FIELD_NUMBER: _ClassVar[int]
    BIAS_FIELD_NUMBER: _ClassVar[int]
    RGB_FIELD_NUMBER: _ClassVar[int]
    GRID_PNG_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    layer: str
    weights: Tensor
    bias: Tensor
    rgb: bool
    grid_png: bytes
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., layer: _Optional[str] = ..., weights: _Optional[_Union[Tensor, _Mapping]] = ..., bias: _Optional[_Union[Tensor, _Mapping]] = ..., rgb: _Optional[bool] = ..., grid_png: _Optional[bytes] = ...) -> None: ...

class SaliencyParams(_message.Message):
    __slots__ = ("layer", "samples", "noise_level", "steps", "seed", "batch_size", "clip_percentile", "colormap")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    NOISE_LEVEL_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    CLIP_PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    COLORMAP_FIELD_NUMBER: _ClassVar[int]
    layer: str
    samples: int
    noise_level: float
    steps: int
    seed: int
    batch_size: int
    clip_percentile: float
    colormap: str
    def __init__(self, layer: _Optional[str] = ..., samples: _Optional[int] = ..., noise_level: _Optional[float] = ..., steps: _Optional[int] = ..., seed: _Optional[int] = ..., batch_size: _Optional[int] = ..., clip_percentile: _Optional[float] = ..., colormap: _Optional[str] = ...) -> None: ...

class SaliencyRequest(_message.Message):
    __slots__ = ("model", "image", "method", "target", "params", "images", "include_input", "include_pngs")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INPUT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PNGS_FIELD_NUMBER: _ClassVar[int]
    model: str
    image: Image
    method: str
    target: Target
    params: SaliencyParams
    images: _containers.RepeatedCompositeFieldContainer[Image]
    include_input: bool
    include_pngs: bool
    def __init__(self, model: _Optional[str] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., method: _Optional[str] = ..., target: _Optional[_Union[Target, _Mapping]] = ..., params: _Optional[_Union[SaliencyParams, _Mapping]] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., include_input: _Optional[bool] = ..., include_pngs: _Optional[bool] = ...) -> None: ...

class SaliencyResponse(_message.Message):
    __slots__ = ("stamp", "input", "method", "target", "map", "attribution", "heatmap_png", "overlay_png", "resolved", "items", "error")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    MAP_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    HEATMAP_PNG_FIELD_NUMBER: _ClassVar[int]
    OVERLAY_PNG_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    input: PreprocessedInput
    method: str
    target: Prediction
    map: Tensor
    attribution: Tensor
    heatmap_png: bytes
    overlay_png: bytes
    resolved: SaliencyParams
    items: _containers.RepeatedCompositeFieldContainer[SaliencyResponse]
    error: ItemError
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., input: _Optional[_Union[PreprocessedInput, _Mapping]] = ..., method: _Optional[str] = ..., target: _Optional[_Union[Prediction, _Mapping]] = ..., map: _Optional[_Union[Tensor, _Mapping]] = ..., attribution: _Optional[_Union[Tensor, _Mapping]] = ..., heatmap_png: _Optional[bytes] = ..., overlay_png: _Optional[bytes] = ..., resolved: _Optional[_Union[SaliencyParams, _Mapping]] = ..., items: _Optional[_Iterable[_Union[SaliencyResponse, _Mapping]]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class AttackParams(_message.Message):
    __slots__ = ("step_size", "steps", "random_start", "seed")
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    RANDOM_START_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    step_size: float
    steps: int
    random_start: bool
    seed: int
    def __init__(self, step_size: _Optional[float] = ..., steps: _Optional[int] = ..., random_start: _Optional[bool] = ..., seed: _Optional[int] = ...) -> None: ...

class AttackRequest(_message.Message):
    __slots__ = ("model", "image", "method", "epsilons", "target", "params", "label", "images", "include_input", "include_pngs")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    EPSILONS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INPUT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PNGS_FIELD_NUMBER: _ClassVar[int]
    model: str
    image: Image
    method: str
    epsilons: _containers.RepeatedScalarFieldContainer[float]
    target: Target
    params: AttackParams
    label: Target
    images: _containers.RepeatedCompositeFieldContainer[Image]
    include_input: bool
    include_pngs: bool
    def __init__(self, model: _Optional[str] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., method: _Optional[str] = ..., epsilons: _Optional[_Iterable[float]] = ..., target: _Optional[_Union[Target, _Mapping]] = ..., params: _Optional[_Union[AttackParams, _Mapping]] = ..., label: _Optional[_Union[Target, _Mapping]] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., include_input: _Optional[bool] = ..., include_pngs: _Optional[bool] = ...) -> None: ...

class AttackOutcome(_message.Message):
    __slots__ = ("epsilon", "adversarial", "adversarial_png", "perturbation_png", "prediction", "success", "linf", "l2", "step_size")
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    ADVERSARIAL_FIELD_NUMBER: _ClassVar[int]
    ADVERSARIAL_PNG_FIELD_NUMBER: _ClassVar[int]
    PERTURBATION_PNG_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    LINF_FIELD_NUMBER: _ClassVar[int]
    L2_FIELD_NUMBER: _ClassVar[int]
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    epsilon: float
    adversarial: Tensor
    adversarial_png: bytes
    perturbation_png: bytes
    prediction: Prediction
    success: bool
    linf: float
    l2: float
    step_size: float
    def __init__(self, epsilon: _Optional[float] = ..., adversarial: _Optional[_Union[Tensor, _Mapping]] = ..., adversarial_png: _Optional[bytes] = ..., perturbation_png: _Optional[bytes] = ..., prediction: _Optional[_Union[Prediction, _Mapping]] = ..., success: _Optional[bool] = ..., linf: _Optional[float] = ..., l2: _Optional[float] = ..., step_size: _Optional[float] = ...) -> None: ...

class AttackResponse(_message.Message):
    __slots__ = ("stamp", "input", "method", "original", "target", "targeted", "outcomes", "resolved", "label", "clean_misclassified", "items", "error")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    TARGETED_FIELD_NUMBER: _ClassVar[int]
    OUTCOMES_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    CLEAN_MISCLASSIFIED_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    input: PreprocessedInput
    method: str
    original: Prediction
    target: Prediction
    targeted: bool
    outcomes: _containers.RepeatedCompositeFieldContainer[AttackOutcome]
    resolved: AttackParams
    label: Prediction
    clean_misclassified: bool
    items: _containers.RepeatedCompositeFieldContainer[AttackResponse]
    error: ItemError
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., input: _Optional[_Union[PreprocessedInput, _Mapping]] = ..., method: _Optional[str] = ..., original: _Optional[_Union[Prediction, _Mapping]] = ..., target: _Optional[_Union[Prediction, _Mapping]] = ..., targeted: _Optional[bool] = ..., outcomes: _Optional[_Iterable[_Union[AttackOutcome, _Mapping]]] = ..., resolved: _Optional[_Union[AttackParams, _Mapping]] = ..., label: _Optional[_Union[Prediction, _Mapping]] = ..., clean_misclassified: _Optional[bool] = ..., items: _Optional[_Iterable[_Union[AttackResponse, _Mapping]]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class MinimalAttackParams(_message.Message):
    __slots__ = ("step_size", "steps", "random_start", "seed", "max_epsilon", "candidates", "overshoot")
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    RANDOM_START_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    MAX_EPSILON_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    OVERSHOOT_FIELD_NUMBER: _ClassVar[int]
    step_size: float
    steps: int
    random_start: bool
    seed: int
    max_epsilon: float
    candidates: int
    overshoot: float
    def __init__(self, step_size: _Optional[float] = ..., steps: _Optional[int] = ..., random_start: _Optional[bool] = ..., seed: _Optional[int] = ..., max_epsilon: _Optional[float] = ..., candidates: _Optional[int] = ..., overshoot: _Optional[float] = ...) -> None: ...

class MinimalAttackRequest(_message.Message):
    __slots__ = ("model", "image", "method", "label", "target", "params", "images", "include_input", "include_pngs")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INPUT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PNGS_FIELD_NUMBER: _ClassVar[int]
    model: str
    image: Image
    method: str
    label: Target
    target: Target
    params: MinimalAttackParams
    images: _containers.RepeatedCompositeFieldContainer[Image]
    include_input: bool
    include_pngs: bool
    def __init__(self, model: _Optional[str] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., method: _Optional[str] = ..., label: _Optional[_Union[Target, _Mapping]] = ..., target: _Optional[_Union[Target, _Mapping]] = ..., params: _Optional[_Union[MinimalAttackParams, _Mapping]] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., include_input: _Optional[bool] = ..., include_pngs: _Optional[bool] = ...) -> None: ...

class MinimalAttackResponse(_message.Message):
    __slots__ = ("stamp", "input", "method", "original", "label", "targeted", "found", "clean_misclassified", "level", "epsilon", "runs", "monotone", "violations", "adversarial", "adversarial_png", "perturbation_png", "prediction", "success", "linf", "l2", "success_raw", "linf_raw", "l2_raw", "rounded_outward", "iterations", "resolved", "items", "error")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    ORIGINAL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    TARGETED_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    CLEAN_MISCLASSIFIED_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    EPSILON_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    MONOTONE_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    ADVERSARIAL_FIELD_NUMBER: _ClassVar[int]
    ADVERSARIAL_PNG_FIELD_NUMBER: _ClassVar[int]
    PERTURBATION_PNG_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_FIELD_NUMBER: _ClassVar[int]
    LINF_FIELD_NUMBER: _ClassVar[int]
    L2_FIELD_NUMBER: _ClassVar[int]
    SUCCESS_RAW_FIELD_NUMBER: _ClassVar[int]
    LINF_RAW_FIELD_NUMBER: _ClassVar[int]
    L2_RAW_FIELD_NUMBER: _ClassVar[int]
    ROUNDED_OUTWARD_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    input: PreprocessedInput
    method: str
    original: Prediction
    label: Prediction
    targeted: bool
    found: bool
    clean_misclassified: bool
    level: int
    epsilon: float
    runs: int
    monotone: bool
    violations: _containers.RepeatedScalarFieldContainer[int]
    adversarial: Tensor
    adversarial_png: bytes
    perturbation_png: bytes
    prediction: Prediction
    success: bool
    linf: float
    l2: float
    success_raw: bool
    linf_raw: float
    l2_raw: float
    rounded_outward: bool
    iterations: int
    resolved: MinimalAttackParams
    items: _containers.RepeatedCompositeFieldContainer[MinimalAttackResponse]
    error: ItemError
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., input: _Optional[_Union[PreprocessedInput, _Mapping]] = ..., method: _Optional[str] = ..., original: _Optional[_Union[Prediction, _Mapping]] = ..., label: _Optional[_Union[Prediction, _Mapping]] = ..., targeted: _Optional[bool] = ..., found: _Optional[bool] = ..., clean_misclassified: _Optional[bool] = ..., level: _Optional[int] = ..., epsilon: _Optional[float] = ..., runs: _Optional[int] = ..., monotone: _Optional[bool] = ..., violations: _Optional[_Iterable[int]] = ..., adversarial: _Optional[_Union[Tensor, _Mapping]] = ..., adversarial_png: _Optional[bytes] = ..., perturbation_png: _Optional[bytes] = ..., prediction: _Optional[_Union[Prediction, _Mapping]] = ..., success: _Optional[bool] = ..., linf: _Optional[float] = ..., l2: _Optional[float] = ..., success_raw: _Optional[bool] = ..., linf_raw: _Optional[float] = ..., l2_raw: _Optional[float] = ..., rounded_outward: _Optional[bool] = ..., iterations: _Optional[int] = ..., resolved: _Optional[_Union[MinimalAttackParams, _Mapping]] = ..., items: _Optional[_Iterable[_Union[MinimalAttackResponse, _Mapping]]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class AttackDatasetParams(_message.Message):
    __slots__ = ("step_size", "steps", "random_start", "seed", "candidates", "overshoot", "batch_size")
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    RANDOM_START_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    OVERSHOOT_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    step_size: float
    steps: int
    random_start: bool
    seed: int
    candidates: int
    overshoot: float
    batch_size: int
    def __init__(self, step_size: _Optional[float] = ..., steps: _Optional[int] = ..., random_start: _Optional[bool] = ..., seed: _Optional[int] = ..., candidates: _Optional[int] = ..., overshoot: _Optional[float] = ..., batch_size: _Optional[int] = ...) -> None: ...

class AttackDatasetRequest(_message.Message):
    __slots__ = ("model", "dataset", "methods", "epsilons", "limit", "true_labels", "params", "every_step")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    METHODS_FIELD_NUMBER: _ClassVar[int]
    EPSILONS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    TRUE_LABELS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    EVERY_STEP_FIELD_NUMBER: _ClassVar[int]
    model: str
    dataset: str
    methods: _containers.RepeatedScalarFieldContainer[str]
    epsilons: _containers.RepeatedScalarFieldContainer[float]
    limit: int
    true_labels: bool
    params: AttackDatasetParams
    every_step: bool
    def __init__(self, model: _Optional[str] = ..., dataset: _Optional[str] = ..., methods: _Optional[_Iterable[str]] = ..., epsilons: _Optional[_Iterable[float]] = ..., limit: _Optional[int] = ..., true_labels: _Optional[bool] = ..., params: _Optional[_Union[AttackDatasetParams, _Mapping]] = ..., every_step: _Optional[bool] = ...) -> None: ...

class MethodCurve(_message.Message):
    __slots__ = ("method", "accuracy", "levels", "minimal", "median_minimal", "non_monotone", "runs", "not_found")
    METHOD_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    LEVELS_FIELD_NUMBER: _ClassVar[int]
    MINIMAL_FIELD_NUMBER: _ClassVar[int]
    MEDIAN_MINIMAL_FIELD_NUMBER: _ClassVar[int]
    NON_MONOTONE_FIELD_NUMBER: _ClassVar[int]
    RUNS_FIELD_NUMBER: _ClassVar[int]
    NOT_FOUND_FIELD_NUMBER: _ClassVar[int]
    method: str
    accuracy: _containers.RepeatedScalarFieldContainer[float]
    levels: _containers.RepeatedScalarFieldContainer[int]
    minimal: Tensor
    median_minimal: float
    non_monotone: int
    runs: int
    not_found: int
    def __init__(self, method: _Optional[str] = ..., accuracy: _Optional[_Iterable[float]] = ..., levels: _Optional[_Iterable[int]] = ..., minimal: _Optional[_Union[Tensor, _Mapping]] = ..., median_minimal: _Optional[float] = ..., non_monotone: _Optional[int] = ..., runs: _Optional[int] = ..., not_found: _Optional[int] = ...) -> None: ...

class AttackDatasetResult(_message.Message):
    __slots__ = ("stamp", "dataset", "images", "clean_accuracy", "epsilons", "curves", "curve_png", "resolved", "true_labels", "norm", "skipped", "precomputed")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    CLEAN_ACCURACY_FIELD_NUMBER: _ClassVar[int]
    EPSILONS_FIELD_NUMBER: _ClassVar[int]
    CURVES_FIELD_NUMBER: _ClassVar[int]
    CURVE_PNG_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    TRUE_LABELS_FIELD_NUMBER: _ClassVar[int]
    NORM_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    PRECOMPUTED_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    dataset: str
    images: int
    clean_accuracy: float
    epsilons: _containers.RepeatedScalarFieldContainer[float]
    curves: _containers.RepeatedCompositeFieldContainer[MethodCurve]
    curve_png: bytes
    resolved: AttackDatasetParams
    true_labels: bool
    norm: str
    skipped: int
    precomputed: bool
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., dataset: _Optional[str] = ..., images: _Optional[int] = ..., clean_accuracy: _Optional[float] = ..., epsilons: _Optional[_Iterable[float]] = ..., curves: _Optional[_Iterable[_Union[MethodCurve, _Mapping]]] = ..., curve_png: _Optional[bytes] = ..., resolved: _Optional[_Union[AttackDatasetParams, _Mapping]] = ..., true_labels: _Optional[bool] = ..., norm: _Optional[str] = ..., skipped: _Optional[int] = ..., precomputed: _Optional[bool] = ...) -> None: ...

class AttackDatasetEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    result: AttackDatasetResult
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[AttackDatasetResult, _Mapping]] = ...) -> None: ...

class ListPrecomputedRequest(_message.Message):
    __slots__ = ("model", "layer", "dataset")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    model: str
    layer: str
    dataset: str
    def __init__(self, model: _Optional[str] = ..., layer: _Optional[str] = ..., dataset: _Optional[str] = ...) -> None: ...

class AtlasBatch(_message.Message):
    __slots__ = ("channels",)
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    channels: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, channels: _Optional[_Iterable[int]] = ...) -> None: ...

class AtlasLayer(_message.Message):
    __slots__ = ("layer", "resolved", "batch", "dataset", "units", "batches")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    BATCH_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    UNITS_FIELD_NUMBER: _ClassVar[int]
    BATCHES_FIELD_NUMBER: _ClassVar[int]
    layer: str
    resolved: VisualizeFilterParams
    batch: int
    dataset: str
    units: int
    batches: _containers.RepeatedCompositeFieldContainer[AtlasBatch]
    def __init__(self, layer: _Optional[str] = ..., resolved: _Optional[_Union[VisualizeFilterParams, _Mapping]] = ..., batch: _Optional[int] = ..., dataset: _Optional[str] = ..., units: _Optional[int] = ..., batches: _Optional[_Iterable[_Union[AtlasBatch, _Mapping]]] = ...) -> None: ...

class StoredRobustness(_message.Message):
    __slots__ = ("result", "limit", "engine")
    RESULT_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    ENGINE_FIELD_NUMBER: _ClassVar[int]
    result: AttackDatasetResult
    limit: int
    engine: str
    def __init__(self, result: _Optional[_Union[AttackDatasetResult, _Mapping]] = ..., limit: _Optional[int] = ..., engine: _Optional[str] = ...) -> None: ...

class ListPrecomputedResponse(_message.Message):
    __slots__ = ("stamp", "atlas", "robustness")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    ATLAS_FIELD_NUMBER: _ClassVar[int]
    ROBUSTNESS_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    atlas: _containers.RepeatedCompositeFieldContainer[AtlasLayer]
    robustness: _containers.RepeatedCompositeFieldContainer[StoredRobustness]
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., atlas: _Optional[_Iterable[_Union[AtlasLayer, _Mapping]]] = ..., robustness: _Optional[_Iterable[_Union[StoredRobustness, _Mapping]]] = ...) -> None: ...

class VisualizeFilterParams(_message.Message):
    __slots__ = ("objective", "steps", "image_size", "learning_rate", "seed", "parameterization", "transforms", "preview_every", "restarts", "preset", "l2_decay", "blur_every", "blur_sigma", "blur_sigma_end", "jitter", "scale_range", "rotate_degrees", "tv_weight", "clip_norm_percentile", "clip_contribution_percentile", "start_from_mean")
    OBJECTIVE_FIELD_NUMBER: _ClassVar[int]
    STEPS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    LEARNING_RATE_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PARAMETERIZATION_FIELD_NUMBER: _ClassVar[int]
    TRANSFORMS_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_EVERY_FIELD_NUMBER: _ClassVar[int]
    RESTARTS_FIELD_NUMBER: _ClassVar[int]
    PRESET_FIELD_NUMBER: _ClassVar[int]
    L2_DECAY_FIELD_NUMBER: _ClassVar[int]
    BLUR_EVERY_FIELD_NUMBER: _ClassVar[int]
    BLUR_SIGMA_FIELD_NUMBER: _ClassVar[int]
    BLUR_SIGMA_END_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    SCALE_RANGE_FIELD_NUMBER: _ClassVar[int]
    ROTATE_DEGREES_FIELD_NUMBER: _ClassVar[int]
    TV_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    CLIP_NORM_PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    CLIP_CONTRIBUTION_PERCENTILE_FIELD_NUMBER: _ClassVar[int]
    START_FROM_MEAN_FIELD_NUMBER: _ClassVar[int]
    objective: str
    steps: int
    image_size: int
    learning_rate: float
    seed: int
    parameterization: str
    transforms: bool
    preview_every: int
    restarts: int
    preset: str
    l2_decay: float
    blur_every: int
    blur_sigma: float
    blur_sigma_end: float
    jitter: int
    scale_range: float
    rotate_degrees: float
    tv_weight: float
    clip_norm_percentile: float
    clip_contribution_percentile: float
    start_from_mean: bool
    def __init__(self, objective: _Optional[str] = ..., steps: _Optional[int] = ..., image_size: _Optional[int] = ..., learning_rate: _Optional[float] = ..., seed: _Optional[int] = ..., parameterization: _Optional[str] = ..., transforms: _Optional[bool] = ..., preview_every: _Optional[int] = ..., restarts: _Optional[int] = ..., preset: _Optional[str] = ..., l2_decay: _Optional[float] = ..., blur_every: _Optional[int] = ..., blur_sigma: _Optional[float] = ..., blur_sigma_end: _Optional[float] = ..., jitter: _Optional[int] = ..., scale_range: _Optional[float] = ..., rotate_degrees: _Optional[float] = ..., tv_weight: _Optional[float] = ..., clip_norm_percentile: _Optional[float] = ..., clip_contribution_percentile: _Optional[float] = ..., start_from_mean: _Optional[bool] = ...) -> None: ...

class VisualizeFilterRequest(_message.Message):
    __slots__ = ("model", "layer", "channels", "params", "every_step")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    EVERY_STEP_FIELD_NUMBER: _ClassVar[int]
    model: str
    layer: str
    channels: _containers.RepeatedScalarFieldContainer[int]
    params: VisualizeFilterParams
    every_step: bool
    def __init__(self, model: _Optional[str] = ..., layer: _Optional[str] = ..., channels: _Optional[_Iterable[int]] = ..., params: _Optional[_Union[VisualizeFilterParams, _Mapping]] = ..., every_step: _Optional[bool] = ...) -> None: ...

class VisualizeFilterResult(_message.Message):
    __slots__ = ("stamp", "layer", "channels", "images", "pngs", "grid_png", "activations", "resolved", "from_atlas")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    PNGS_FIELD_NUMBER: _ClassVar[int]
    GRID_PNG_FIELD_NUMBER: _ClassVar[int]
    ACTIVATIONS_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    FROM_ATLAS_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    layer: str
    channels: _containers.RepeatedScalarFieldContainer[int]
    images: Tensor
    pngs: _containers.RepeatedScalarFieldContainer[bytes]
    grid_png: bytes
    activations: _containers.RepeatedScalarFieldContainer[float]
    resolved: VisualizeFilterParams
    from_atlas: bool
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., layer: _Optional[str] = ..., channels: _Optional[_Iterable[int]] = ..., images: _Optional[_Union[Tensor, _Mapping]] = ..., pngs: _Optional[_Iterable[bytes]] = ..., grid_png: _Optional[bytes] = ..., activations: _Optional[_Iterable[float]] = ..., resolved: _Optional[_Union[VisualizeFilterParams, _Mapping]] = ..., from_atlas: _Optional[bool] = ...) -> None: ...

class VisualizeFilterEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    result: VisualizeFilterResult
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[VisualizeFilterResult, _Mapping]] = ...) -> None: ...

class LayerWeight(_message.Message):
    __slots__ = ("layer", "weight")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    WEIGHT_FIELD_NUMBER: _ClassVar[int]
    layer: str
    weight: float
    def __init__(self, layer: _Optional[str] = ..., weight: _Optional[float] = ...) -> None: ...

class DeepDreamParams(_message.Message):
    __slots__ = ("octaves", "octave_scale", "iterations", "step_size", "jitter", "seed", "preview_every")
    OCTAVES_FIELD_NUMBER: _ClassVar[int]
    OCTAVE_SCALE_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    STEP_SIZE_FIELD_NUMBER: _ClassVar[int]
    JITTER_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_EVERY_FIELD_NUMBER: _ClassVar[int]
    octaves: int
    octave_scale: float
    iterations: int
    step_size: float
    jitter: int
    seed: int
    preview_every: int
    def __init__(self, octaves: _Optional[int] = ..., octave_scale: _Optional[float] = ..., iterations: _Optional[int] = ..., step_size: _Optional[float] = ..., jitter: _Optional[int] = ..., seed: _Optional[int] = ..., preview_every: _Optional[int] = ...) -> None: ...

class DeepDreamRequest(_message.Message):
    __slots__ = ("model", "image", "layers", "params", "every_step")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    EVERY_STEP_FIELD_NUMBER: _ClassVar[int]
    model: str
    image: Image
    layers: _containers.RepeatedCompositeFieldContainer[LayerWeight]
    params: DeepDreamParams
    every_step: bool
    def __init__(self, model: _Optional[str] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., layers: _Optional[_Iterable[_Union[LayerWeight, _Mapping]]] = ..., params: _Optional[_Union[DeepDreamParams, _Mapping]] = ..., every_step: _Optional[bool] = ...) -> None: ...

class LayerGain(_message.Message):
    __slots__ = ("layer", "norm_before", "norm_after")
    LAYER_FIELD_NUMBER: _ClassVar[int]
    NORM_BEFORE_FIELD_NUMBER: _ClassVar[int]
    NORM_AFTER_FIELD_NUMBER: _ClassVar[int]
    layer: str
    norm_before: float
    norm_after: float
    def __init__(self, layer: _Optional[str] = ..., norm_before: _Optional[float] = ..., norm_after: _Optional[float] = ...) -> None: ...

class DeepDreamResult(_message.Message):
    __slots__ = ("stamp", "input", "image", "png", "gains", "resolved")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    GAINS_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    input: PreprocessedInput
    image: Tensor
    png: bytes
    gains: _containers.RepeatedCompositeFieldContainer[LayerGain]
    resolved: DeepDreamParams
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., input: _Optional[_Union[PreprocessedInput, _Mapping]] = ..., image: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[bytes] = ..., gains: _Optional[_Iterable[_Union[LayerGain, _Mapping]]] = ..., resolved: _Optional[_Union[DeepDreamParams, _Mapping]] = ...) -> None: ...

class DeepDreamEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    result: DeepDreamResult
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[DeepDreamResult, _Mapping]] = ...) -> None: ...

class AttributeSets(_message.Message):
    __slots__ = ("positive", "negative", "positive_class", "negative_class")
    POSITIVE_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_FIELD_NUMBER: _ClassVar[int]
    POSITIVE_CLASS_FIELD_NUMBER: _ClassVar[int]
    NEGATIVE_CLASS_FIELD_NUMBER: _ClassVar[int]
    positive: _containers.RepeatedCompositeFieldContainer[Image]
    negative: _containers.RepeatedCompositeFieldContainer[Image]
    positive_class: str
    negative_class: str
    def __init__(self, positive: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., negative: _Optional[_Iterable[_Union[Image, _Mapping]]] = ..., positive_class: _Optional[str] = ..., negative_class: _Optional[str] = ...) -> None: ...

class InterpolateFeaturesParams(_message.Message):
    __slots__ = ("iterations", "warm_iterations", "tv_weight", "tv_beta", "seed", "set_size", "normalize_attribute", "preview_every")
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    WARM_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    TV_WEIGHT_FIELD_NUMBER: _ClassVar[int]
    TV_BETA_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    SET_SIZE_FIELD_NUMBER: _ClassVar[int]
    NORMALIZE_ATTRIBUTE_FIELD_NUMBER: _ClassVar[int]
    PREVIEW_EVERY_FIELD_NUMBER: _ClassVar[int]
    iterations: int
    warm_iterations: int
    tv_weight: float
    tv_beta: float
    seed: int
    set_size: int
    normalize_attribute: bool
    preview_every: int
    def __init__(self, iterations: _Optional[int] = ..., warm_iterations: _Optional[int] = ..., tv_weight: _Optional[float] = ..., tv_beta: _Optional[float] = ..., seed: _Optional[int] = ..., set_size: _Optional[int] = ..., normalize_attribute: _Optional[bool] = ..., preview_every: _Optional[int] = ...) -> None: ...

class InterpolateFeaturesRequest(_message.Message):
    __slots__ = ("model", "source", "layers", "sets", "target", "alphas", "params", "every_step")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    SETS_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    ALPHAS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    EVERY_STEP_FIELD_NUMBER: _ClassVar[int]
    model: str
    source: Image
    layers: _containers.RepeatedScalarFieldContainer[str]
    sets: AttributeSets
    target: Image
    alphas: _containers.RepeatedScalarFieldContainer[float]
    params: InterpolateFeaturesParams
    every_step: bool
    def __init__(self, model: _Optional[str] = ..., source: _Optional[_Union[Image, _Mapping]] = ..., layers: _Optional[_Iterable[str]] = ..., sets: _Optional[_Union[AttributeSets, _Mapping]] = ..., target: _Optional[_Union[Image, _Mapping]] = ..., alphas: _Optional[_Iterable[float]] = ..., params: _Optional[_Union[InterpolateFeaturesParams, _Mapping]] = ..., every_step: _Optional[bool] = ...) -> None: ...

class AlphaResult(_message.Message):
    __slots__ = ("alpha", "image", "png", "feature_error", "prediction")
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    FEATURE_ERROR_FIELD_NUMBER: _ClassVar[int]
    PREDICTION_FIELD_NUMBER: _ClassVar[int]
    alpha: float
    image: Tensor
    png: bytes
    feature_error: float
    prediction: Prediction
    def __init__(self, alpha: _Optional[float] = ..., image: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[bytes] = ..., feature_error: _Optional[float] = ..., prediction: _Optional[_Union[Prediction, _Mapping]] = ...) -> None: ...

class InterpolateFeaturesResult(_message.Message):
    __slots__ = ("stamp", "input", "layers", "results", "resolved", "alphas")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    ALPHAS_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    input: PreprocessedInput
    layers: _containers.RepeatedScalarFieldContainer[str]
    results: _containers.RepeatedCompositeFieldContainer[AlphaResult]
    resolved: InterpolateFeaturesParams
    alphas: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., input: _Optional[_Union[PreprocessedInput, _Mapping]] = ..., layers: _Optional[_Iterable[str]] = ..., results: _Optional[_Iterable[_Union[AlphaResult, _Mapping]]] = ..., resolved: _Optional[_Union[InterpolateFeaturesParams, _Mapping]] = ..., alphas: _Optional[_Iterable[float]] = ...) -> None: ...

class InterpolateFeaturesEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    result: InterpolateFeaturesResult
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[InterpolateFeaturesResult, _Mapping]] = ...) -> None: ...

class ListDatasetsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class DatasetInfo(_message.Message):
    __slots__ = ("name", "size", "classes", "fits_models", "manifest_sha256", "kind")
    NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    FITS_MODELS_FIELD_NUMBER: _ClassVar[int]
    MANIFEST_SHA256_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    name: str
    size: int
    classes: _containers.RepeatedScalarFieldContainer[str]
    fits_models: _containers.RepeatedScalarFieldContainer[str]
    manifest_sha256: str
    kind: str
    def __init__(self, name: _Optional[str] = ..., size: _Optional[int] = ..., classes: _Optional[_Iterable[str]] = ..., fits_models: _Optional[_Iterable[str]] = ..., manifest_sha256: _Optional[str] = ..., kind: _Optional[str] = ...) -> None: ...

class ListDatasetsResponse(_message.Message):
    __slots__ = ("datasets",)
    DATASETS_FIELD_NUMBER: _ClassVar[int]
    datasets: _containers.RepeatedCompositeFieldContainer[DatasetInfo]
    def __init__(self, datasets: _Optional[_Iterable[_Union[DatasetInfo, _Mapping]]] = ...) -> None: ...

class BuildIndexParams(_message.Message):
    __slots__ = ("k", "batch_size")
    K_FIELD_NUMBER: _ClassVar[int]
    BATCH_SIZE_FIELD_NUMBER: _ClassVar[int]
    k: int
    batch_size: int
    def __init__(self, k: _Optional[int] = ..., batch_size: _Optional[int] = ...) -> None: ...

class BuildIndexRequest(_message.Message):
    __slots__ = ("model", "dataset", "layers", "params", "every_step")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    EVERY_STEP_FIELD_NUMBER: _ClassVar[int]
    model: str
    dataset: str
    layers: _containers.RepeatedScalarFieldContainer[str]
    params: BuildIndexParams
    every_step: bool
    def __init__(self, model: _Optional[str] = ..., dataset: _Optional[str] = ..., layers: _Optional[_Iterable[str]] = ..., params: _Optional[_Union[BuildIndexParams, _Mapping]] = ..., every_step: _Optional[bool] = ...) -> None: ...

class BuildIndexResult(_message.Message):
    __slots__ = ("stamp", "dataset", "index_id", "layers", "images", "skipped", "reused", "seconds", "images_per_s", "peak_rss_growth_mb", "resolved")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    INDEX_ID_FIELD_NUMBER: _ClassVar[int]
    LAYERS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_PER_S_FIELD_NUMBER: _ClassVar[int]
    PEAK_RSS_GROWTH_MB_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    dataset: str
    index_id: str
    layers: _containers.RepeatedScalarFieldContainer[str]
    images: int
    skipped: int
    reused: bool
    seconds: float
    images_per_s: float
    peak_rss_growth_mb: float
    resolved: BuildIndexParams
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., dataset: _Optional[str] = ..., index_id: _Optional[str] = ..., layers: _Optional[_Iterable[str]] = ..., images: _Optional[int] = ..., skipped: _Optional[int] = ..., reused: _Optional[bool] = ..., seconds: _Optional[float] = ..., images_per_s: _Optional[float] = ..., peak_rss_growth_mb: _Optional[float] = ..., resolved: _Optional[_Union[BuildIndexParams, _Mapping]] = ...) -> None: ...

class BuildIndexEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    result: BuildIndexResult
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[BuildIndexResult, _Mapping]] = ...) -> None: ...

class TopActivationsRequest(_message.Message):
    __slots__ = ("model", "dataset", "layer", "channels", "k", "entry_pngs", "projections")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    ENTRY_PNGS_FIELD_NUMBER: _ClassVar[int]
    PROJECTIONS_FIELD_NUMBER: _ClassVar[int]
    model: str
    dataset: str
    layer: str
    channels: _containers.RepeatedScalarFieldContainer[int]
    k: int
    entry_pngs: bool
    projections: bool
    def __init__(self, model: _Optional[str] = ..., dataset: _Optional[str] = ..., layer: _Optional[str] = ..., channels: _Optional[_Iterable[int]] = ..., k: _Optional[int] = ..., entry_pngs: _Optional[bool] = ..., projections: _Optional[bool] = ...) -> None: ...

class Box(_message.Message):
    __slots__ = ("y0", "x0", "y1", "x1")
    Y0_FIELD_NUMBER: _ClassVar[int]
    X0_FIELD_NUMBER: _ClassVar[int]
    Y1_FIELD_NUMBER: _ClassVar[int]
    X1_FIELD_NUMBER: _ClassVar[int]
    y0: int
    x0: int
    y1: int
    x1: int
    def __init__(self, y0: _Optional[int] = ..., x0: _Optional[int] = ..., y1: _Optional[int] = ..., x1: _Optional[int] = ...) -> None: ...

class TopEntry(_message.Message):
    __slots__ = ("image_id", "label", "label_name", "value", "y", "x", "box", "padded", "crop", "crop_png", "image_png", "projection")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    X_FIELD_NUMBER: _ClassVar[int]
    BOX_FIELD_NUMBER: _ClassVar[int]
    PADDED_FIELD_NUMBER: _ClassVar[int]
    CROP_FIELD_NUMBER: _ClassVar[int]
    CROP_PNG_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PNG_FIELD_NUMBER: _ClassVar[int]
    PROJECTION_FIELD_NUMBER: _ClassVar[int]
    image_id: int
    label: int
    label_name: str
    value: float
    y: int
    x: int
    box: Box
    padded: bool
    crop: Tensor
    crop_png: bytes
    image_png: bytes
    projection: Tensor
    def __init__(self, image_id: _Optional[int] = ..., label: _Optional[int] = ..., label_name: _Optional[str] = ..., value: _Optional[float] = ..., y: _Optional[int] = ..., x: _Optional[int] = ..., box: _Optional[_Union[Box, _Mapping]] = ..., padded: _Optional[bool] = ..., crop: _Optional[_Union[Tensor, _Mapping]] = ..., crop_png: _Optional[bytes] = ..., image_png: _Optional[bytes] = ..., projection: _Optional[_Union[Tensor, _Mapping]] = ...) -> None: ...

class ChannelTop(_message.Message):
    __slots__ = ("channel", "entries")
    CHANNEL_FIELD_NUMBER: _ClassVar[int]
    ENTRIES_FIELD_NUMBER: _ClassVar[int]
    channel: int
    entries: _containers.RepeatedCompositeFieldContainer[TopEntry]
    def __init__(self, channel: _Optional[int] = ..., entries: _Optional[_Iterable[_Union[TopEntry, _Mapping]]] = ...) -> None: ...

class TopActivationsResponse(_message.Message):
    __slots__ = ("stamp", "dataset", "layer", "index_id", "spatial", "rf_size", "channels", "grid_png")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    INDEX_ID_FIELD_NUMBER: _ClassVar[int]
    SPATIAL_FIELD_NUMBER: _ClassVar[int]
    RF_SIZE_FIELD_NUMBER: _ClassVar[int]
    CHANNELS_FIELD_NUMBER: _ClassVar[int]
    GRID_PNG_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    dataset: str
    layer: str
    index_id: str
    spatial: bool
    rf_size: int
    channels: _containers.RepeatedCompositeFieldContainer[ChannelTop]
    grid_png: bytes
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., dataset: _Optional[str] = ..., layer: _Optional[str] = ..., index_id: _Optional[str] = ..., spatial: _Optional[bool] = ..., rf_size: _Optional[int] = ..., channels: _Optional[_Iterable[_Union[ChannelTop, _Mapping]]] = ..., grid_png: _Optional[bytes] = ...) -> None: ...

class NearestNeighborsRequest(_message.Message):
    __slots__ = ("model", "dataset", "layer", "image", "k", "metric", "include_input", "include_pngs")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    K_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_INPUT_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_PNGS_FIELD_NUMBER: _ClassVar[int]
    model: str
    dataset: str
    layer: str
    image: Image
    k: int
    metric: str
    include_input: bool
    include_pngs: bool
    def __init__(self, model: _Optional[str] = ..., dataset: _Optional[str] = ..., layer: _Optional[str] = ..., image: _Optional[_Union[Image, _Mapping]] = ..., k: _Optional[int] = ..., metric: _Optional[str] = ..., include_input: _Optional[bool] = ..., include_pngs: _Optional[bool] = ...) -> None: ...

class Neighbor(_message.Message):
    __slots__ = ("image_id", "label", "label_name", "distance", "image", "png")
    IMAGE_ID_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_NAME_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    image_id: int
    label: int
    label_name: str
    distance: float
    image: Tensor
    png: bytes
    def __init__(self, image_id: _Optional[int] = ..., label: _Optional[int] = ..., label_name: _Optional[str] = ..., distance: _Optional[float] = ..., image: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[bytes] = ...) -> None: ...

class NearestNeighborsResponse(_message.Message):
    __slots__ = ("stamp", "input", "dataset", "layer", "metric", "index_id", "neighbors", "grid_png")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    METRIC_FIELD_NUMBER: _ClassVar[int]
    INDEX_ID_FIELD_NUMBER: _ClassVar[int]
    NEIGHBORS_FIELD_NUMBER: _ClassVar[int]
    GRID_PNG_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    input: PreprocessedInput
    dataset: str
    layer: str
    metric: str
    index_id: str
    neighbors: _containers.RepeatedCompositeFieldContainer[Neighbor]
    grid_png: bytes
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., input: _Optional[_Union[PreprocessedInput, _Mapping]] = ..., dataset: _Optional[str] = ..., layer: _Optional[str] = ..., metric: _Optional[str] = ..., index_id: _Optional[str] = ..., neighbors: _Optional[_Iterable[_Union[Neighbor, _Mapping]]] = ..., grid_png: _Optional[bytes] = ...) -> None: ...

class EmbeddingParams(_message.Message):
    __slots__ = ("perplexity", "iterations", "early_iterations", "pca_dims", "seed")
    PERPLEXITY_FIELD_NUMBER: _ClassVar[int]
    ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    EARLY_ITERATIONS_FIELD_NUMBER: _ClassVar[int]
    PCA_DIMS_FIELD_NUMBER: _ClassVar[int]
    SEED_FIELD_NUMBER: _ClassVar[int]
    perplexity: float
    iterations: int
    early_iterations: int
    pca_dims: int
    seed: int
    def __init__(self, perplexity: _Optional[float] = ..., iterations: _Optional[int] = ..., early_iterations: _Optional[int] = ..., pca_dims: _Optional[int] = ..., seed: _Optional[int] = ...) -> None: ...

class EmbeddingRequest(_message.Message):
    __slots__ = ("model", "dataset", "layer", "method", "limit", "params", "every_step")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    EVERY_STEP_FIELD_NUMBER: _ClassVar[int]
    model: str
    dataset: str
    layer: str
    method: str
    limit: int
    params: EmbeddingParams
    every_step: bool
    def __init__(self, model: _Optional[str] = ..., dataset: _Optional[str] = ..., layer: _Optional[str] = ..., method: _Optional[str] = ..., limit: _Optional[int] = ..., params: _Optional[_Union[EmbeddingParams, _Mapping]] = ..., every_step: _Optional[bool] = ...) -> None: ...

class EmbeddingResult(_message.Message):
    __slots__ = ("stamp", "dataset", "layer", "method", "coordinates", "image_ids", "labels", "classes", "scatter_png", "atlas_png", "thumbnails_png", "thumbnail_size", "thumbnail_columns", "thumbnail_count", "kl_divergence", "explained_variance", "reused", "map_id", "index_id", "seconds", "threads", "resolved")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    COORDINATES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    SCATTER_PNG_FIELD_NUMBER: _ClassVar[int]
    ATLAS_PNG_FIELD_NUMBER: _ClassVar[int]
    THUMBNAILS_PNG_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_SIZE_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_COLUMNS_FIELD_NUMBER: _ClassVar[int]
    THUMBNAIL_COUNT_FIELD_NUMBER: _ClassVar[int]
    KL_DIVERGENCE_FIELD_NUMBER: _ClassVar[int]
    EXPLAINED_VARIANCE_FIELD_NUMBER: _ClassVar[int]
    REUSED_FIELD_NUMBER: _ClassVar[int]
    MAP_ID_FIELD_NUMBER: _ClassVar[int]
    INDEX_ID_FIELD_NUMBER: _ClassVar[int]
    SECONDS_FIELD_NUMBER: _ClassVar[int]
    THREADS_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    dataset: str
    layer: str
    method: str
    coordinates: Tensor
    image_ids: _containers.RepeatedScalarFieldContainer[int]
    labels: _containers.RepeatedScalarFieldContainer[int]
    classes: _containers.RepeatedScalarFieldContainer[str]
    scatter_png: bytes
    atlas_png: bytes
    thumbnails_png: bytes
    thumbnail_size: int
    thumbnail_columns: int
    thumbnail_count: int
    kl_divergence: float
    explained_variance: _containers.RepeatedScalarFieldContainer[float]
    reused: bool
    map_id: str
    index_id: str
    seconds: float
    threads: int
    resolved: EmbeddingParams
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., dataset: _Optional[str] = ..., layer: _Optional[str] = ..., method: _Optional[str] = ..., coordinates: _Optional[_Union[Tensor, _Mapping]] = ..., image_ids: _Optional[_Iterable[int]] = ..., labels: _Optional[_Iterable[int]] = ..., classes: _Optional[_Iterable[str]] = ..., scatter_png: _Optional[bytes] = ..., atlas_png: _Optional[bytes] = ..., thumbnails_png: _Optional[bytes] = ..., thumbnail_size: _Optional[int] = ..., thumbnail_columns: _Optional[int] = ..., thumbnail_count: _Optional[int] = ..., kl_divergence: _Optional[float] = ..., explained_variance: _Optional[_Iterable[float]] = ..., reused: _Optional[bool] = ..., map_id: _Optional[str] = ..., index_id: _Optional[str] = ..., seconds: _Optional[float] = ..., threads: _Optional[int] = ..., resolved: _Optional[_Union[EmbeddingParams, _Mapping]] = ...) -> None: ...

class EmbeddingEvent(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: Progress
    result: EmbeddingResult
    def __init__(self, progress: _Optional[_Union[Progress, _Mapping]] = ..., result: _Optional[_Union[EmbeddingResult, _Mapping]] = ...) -> None: ...

class PlaceImagesRequest(_message.Message):
    __slots__ = ("model", "dataset", "layer", "method", "limit", "params", "images")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    model: str
    dataset: str
    layer: str
    method: str
    limit: int
    params: EmbeddingParams
    images: _containers.RepeatedCompositeFieldContainer[Image]
    def __init__(self, model: _Optional[str] = ..., dataset: _Optional[str] = ..., layer: _Optional[str] = ..., method: _Optional[str] = ..., limit: _Optional[int] = ..., params: _Optional[_Union[EmbeddingParams, _Mapping]] = ..., images: _Optional[_Iterable[_Union[Image, _Mapping]]] = ...) -> None: ...

class PlacedImage(_message.Message):
    __slots__ = ("x", "y", "neighbor_ids", "neighbor_labels", "neighbor_distances", "label", "label_name", "input")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOR_IDS_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOR_LABELS_FIELD_NUMBER: _ClassVar[int]
    NEIGHBOR_DISTANCES_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    neighbor_ids: _containers.RepeatedScalarFieldContainer[int]
    neighbor_labels: _containers.RepeatedScalarFieldContainer[int]
    neighbor_distances: _containers.RepeatedScalarFieldContainer[float]
    label: int
    label_name: str
    input: PreprocessedInput
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., neighbor_ids: _Optional[_Iterable[int]] = ..., neighbor_labels: _Optional[_Iterable[int]] = ..., neighbor_distances: _Optional[_Iterable[float]] = ..., label: _Optional[int] = ..., label_name: _Optional[str] = ..., input: _Optional[_Union[PreprocessedInput, _Mapping]] = ...) -> None: ...

class PlaceImagesResponse(_message.Message):
    __slots__ = ("stamp", "dataset", "layer", "method", "map_id", "placed", "scatter_png", "resolved")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    MAP_ID_FIELD_NUMBER: _ClassVar[int]
    PLACED_FIELD_NUMBER: _ClassVar[int]
    SCATTER_PNG_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    dataset: str
    layer: str
    method: str
    map_id: str
    placed: _containers.RepeatedCompositeFieldContainer[PlacedImage]
    scatter_png: bytes
    resolved: EmbeddingParams
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., dataset: _Optional[str] = ..., layer: _Optional[str] = ..., method: _Optional[str] = ..., map_id: _Optional[str] = ..., placed: _Optional[_Iterable[_Union[PlacedImage, _Mapping]]] = ..., scatter_png: _Optional[bytes] = ..., resolved: _Optional[_Union[EmbeddingParams, _Mapping]] = ...) -> None: ...

class DatasetImagesRequest(_message.Message):
    __slots__ = ("model", "dataset", "positions", "label", "offset", "limit")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    POSITIONS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    model: str
    dataset: str
    positions: _containers.RepeatedScalarFieldContainer[int]
    label: int
    offset: int
    limit: int
    def __init__(self, model: _Optional[str] = ..., dataset: _Optional[str] = ..., positions: _Optional[_Iterable[int]] = ..., label: _Optional[int] = ..., offset: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class DatasetImage(_message.Message):
    __slots__ = ("position", "label", "label_name", "image", "png")
    POSITION_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_NAME_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    PNG_FIELD_NUMBER: _ClassVar[int]
    position: int
    label: int
    label_name: str
    image: Tensor
    png: bytes
    def __init__(self, position: _Optional[int] = ..., label: _Optional[int] = ..., label_name: _Optional[str] = ..., image: _Optional[_Union[Tensor, _Mapping]] = ..., png: _Optional[bytes] = ...) -> None: ...

class DatasetImagesResponse(_message.Message):
    __slots__ = ("stamp", "dataset", "images", "total", "classes")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    DATASET_FIELD_NUMBER: _ClassVar[int]
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    CLASSES_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    dataset: str
    images: _containers.RepeatedCompositeFieldContainer[DatasetImage]
    total: int
    classes: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., dataset: _Optional[str] = ..., images: _Optional[_Iterable[_Union[DatasetImage, _Mapping]]] = ..., total: _Optional[int] = ..., classes: _Optional[_Iterable[str]] = ...) -> None: ...

class GetServerInfoRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class Limits(_message.Message):
    __slots__ = ("max_message_bytes", "max_image_pixels", "max_image_side", "max_steps", "max_octaves", "max_alphas", "max_set_size", "max_epsilons", "max_samples", "max_channels", "max_concurrent_heavy", "max_queued_heavy", "default_deadline_s", "max_layers", "max_restarts", "max_batch_pixels", "max_pixel_steps", "stream_stall_s", "max_concurrent_rpcs", "keepalive_time_s", "keepalive_timeout_s", "max_connection_idle_s", "max_connection_age_s", "max_connection_age_grace_s", "max_dataset_images", "max_index_k", "max_images_per_call", "progress_events_per_s", "decode_budget_bytes", "batch_max_size", "batch_delay_ms", "max_embedding_points", "max_perplexity", "max_place_images", "max_job_bytes", "max_job_macs")
    MAX_MESSAGE_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGE_SIDE_FIELD_NUMBER: _ClassVar[int]
    MAX_STEPS_FIELD_NUMBER: _ClassVar[int]
    MAX_OCTAVES_FIELD_NUMBER: _ClassVar[int]
    MAX_ALPHAS_FIELD_NUMBER: _ClassVar[int]
    MAX_SET_SIZE_FIELD_NUMBER: _ClassVar[int]
    MAX_EPSILONS_FIELD_NUMBER: _ClassVar[int]
    MAX_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    MAX_CHANNELS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_HEAVY_FIELD_NUMBER: _ClassVar[int]
    MAX_QUEUED_HEAVY_FIELD_NUMBER: _ClassVar[int]
    DEFAULT_DEADLINE_S_FIELD_NUMBER: _ClassVar[int]
    MAX_LAYERS_FIELD_NUMBER: _ClassVar[int]
    MAX_RESTARTS_FIELD_NUMBER: _ClassVar[int]
    MAX_BATCH_PIXELS_FIELD_NUMBER: _ClassVar[int]
    MAX_PIXEL_STEPS_FIELD_NUMBER: _ClassVar[int]
    STREAM_STALL_S_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENT_RPCS_FIELD_NUMBER: _ClassVar[int]
    KEEPALIVE_TIME_S_FIELD_NUMBER: _ClassVar[int]
    KEEPALIVE_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    MAX_CONNECTION_IDLE_S_FIELD_NUMBER: _ClassVar[int]
    MAX_CONNECTION_AGE_S_FIELD_NUMBER: _ClassVar[int]
    MAX_CONNECTION_AGE_GRACE_S_FIELD_NUMBER: _ClassVar[int]
    MAX_DATASET_IMAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_INDEX_K_FIELD_NUMBER: _ClassVar[int]
    MAX_IMAGES_PER_CALL_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_EVENTS_PER_S_FIELD_NUMBER: _ClassVar[int]
    DECODE_BUDGET_BYTES_FIELD_NUMBER: _ClassVar[int]
    BATCH_MAX_SIZE_FIELD_NUMBER: _ClassVar[int]
    BATCH_DELAY_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_EMBEDDING_POINTS_FIELD_NUMBER: _ClassVar[int]
    MAX_PERPLEXITY_FIELD_NUMBER: _ClassVar[int]
    MAX_PLACE_IMAGES_FIELD_NUMBER: _ClassVar[int]
    MAX_JOB_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_JOB_MACS_FIELD_NUMBER: _ClassVar[int]
    max_message_bytes: int
    max_image_pixels: int
    max_image_side: int
    max_steps: int
    max_octaves: int
    max_alphas: int
    max_set_size: int
    max_epsilons: int
    max_samples: int
    max_channels: int
    max_concurrent_heavy: int
    max_queued_heavy: int
    default_deadline_s: float
    max_layers: int
    max_restarts: int
    max_batch_pixels: int
    max_pixel_steps: int
    stream_stall_s: float
    max_concurrent_rpcs: int
    keepalive_time_s: float
    keepalive_timeout_s: float
    max_connection_idle_s: float
    max_connection_age_s: float
    max_connection_age_grace_s: float
    max_dataset_images: int
    max_index_k: int
    max_images_per_call: int
    progress_events_per_s: float
    decode_budget_bytes: int
    batch_max_size: int
    batch_delay_ms: float
    max_embedding_points: int
    max_perplexity: float
    max_place_images: int
    max_job_bytes: int
    max_job_macs: int
    def __init__(self, max_message_bytes: _Optional[int] = ..., max_image_pixels: _Optional[int] = ..., max_image_side: _Optional[int] = ..., max_steps: _Optional[int] = ..., max_octaves: _Optional[int] = ..., max_alphas: _Optional[int] = ..., max_set_size: _Optional[int] = ..., max_epsilons: _Optional[int] = ..., max_samples: _Optional[int] = ..., max_channels: _Optional[int] = ..., max_concurrent_heavy: _Optional[int] = ..., max_queued_heavy: _Optional[int] = ..., default_deadline_s: _Optional[float] = ..., max_layers: _Optional[int] = ..., max_restarts: _Optional[int] = ..., max_batch_pixels: _Optional[int] = ..., max_pixel_steps: _Optional[int] = ..., stream_stall_s: _Optional[float] = ..., max_concurrent_rpcs: _Optional[int] = ..., keepalive_time_s: _Optional[float] = ..., keepalive_timeout_s: _Optional[float] = ..., max_connection_idle_s: _Optional[float] = ..., max_connection_age_s: _Optional[float] = ..., max_connection_age_grace_s: _Optional[float] = ..., max_dataset_images: _Optional[int] = ..., max_index_k: _Optional[int] = ..., max_images_per_call: _Optional[int] = ..., progress_events_per_s: _Optional[float] = ..., decode_budget_bytes: _Optional[int] = ..., batch_max_size: _Optional[int] = ..., batch_delay_ms: _Optional[float] = ..., max_embedding_points: _Optional[int] = ..., max_perplexity: _Optional[float] = ..., max_place_images: _Optional[int] = ..., max_job_bytes: _Optional[int] = ..., max_job_macs: _Optional[int] = ...) -> None: ...

class ServerInfo(_message.Message):
    __slots__ = ("version", "api_version", "device", "limits", "libraries", "models", "worker_threads", "auth_required", "tls", "implemented_rpcs", "running_heavy", "queued_heavy")
    class LibrariesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    API_VERSION_FIELD_NUMBER: _ClassVar[int]
    DEVICE_FIELD_NUMBER: _ClassVar[int]
    LIMITS_FIELD_NUMBER: _ClassVar[int]
    LIBRARIES_FIELD_NUMBER: _ClassVar[int]
    MODELS_FIELD_NUMBER: _ClassVar[int]
    WORKER_THREADS_FIELD_NUMBER: _ClassVar[int]
    AUTH_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    TLS_FIELD_NUMBER: _ClassVar[int]
    IMPLEMENTED_RPCS_FIELD_NUMBER: _ClassVar[int]
    RUNNING_HEAVY_FIELD_NUMBER: _ClassVar[int]
    QUEUED_HEAVY_FIELD_NUMBER: _ClassVar[int]
    version: str
    api_version: str
    device: str
    limits: Limits
    libraries: _containers.ScalarMap[str, str]
    models: _containers.RepeatedScalarFieldContainer[str]
    worker_threads: int
    auth_required: bool
    tls: bool
    implemented_rpcs: _containers.RepeatedScalarFieldContainer[str]
    running_heavy: int
    queued_heavy: int
    def __init__(self, version: _Optional[str] = ..., api_version: _Optional[str] = ..., device: _Optional[str] = ..., limits: _Optional[_Union[Limits, _Mapping]] = ..., libraries: _Optional[_Mapping[str, str]] = ..., models: _Optional[_Iterable[str]] = ..., worker_threads: _Optional[int] = ..., auth_required: _Optional[bool] = ..., tls: _Optional[bool] = ..., implemented_rpcs: _Optional[_Iterable[str]] = ..., running_heavy: _Optional[int] = ..., queued_heavy: _Optional[int] = ...) -> None: ...

class WatchRequest(_message.Message):
    __slots__ = ("model", "layer", "unit", "top_k", "float16", "frame")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    FLOAT16_FIELD_NUMBER: _ClassVar[int]
    FRAME_FIELD_NUMBER: _ClassVar[int]
    model: str
    layer: str
    unit: int
    top_k: int
    float16: bool
    frame: Image
    def __init__(self, model: _Optional[str] = ..., layer: _Optional[str] = ..., unit: _Optional[int] = ..., top_k: _Optional[int] = ..., float16: _Optional[bool] = ..., frame: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class QuantizedMaps(_message.Message):
    __slots__ = ("shape", "dtype", "data", "scale", "offset", "float16")
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    FLOAT16_FIELD_NUMBER: _ClassVar[int]
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: Tensor.DType
    data: bytes
    scale: _containers.RepeatedScalarFieldContainer[float]
    offset: _containers.RepeatedScalarFieldContainer[float]
    float16: bool
    def __init__(self, shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[Tensor.DType, str]] = ..., data: _Optional[bytes] = ..., scale: _Optional[_Iterable[float]] = ..., offset: _Optional[_Iterable[float]] = ..., float16: _Optional[bool] = ...) -> None: ...

class WatchResponse(_message.Message):
    __slots__ = ("stamp", "sequence", "skipped", "layer", "unit", "maps", "unit_map", "predictions", "compute_ms", "error")
    STAMP_FIELD_NUMBER: _ClassVar[int]
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    SKIPPED_FIELD_NUMBER: _ClassVar[int]
    LAYER_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    MAPS_FIELD_NUMBER: _ClassVar[int]
    UNIT_MAP_FIELD_NUMBER: _ClassVar[int]
    PREDICTIONS_FIELD_NUMBER: _ClassVar[int]
    COMPUTE_MS_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    stamp: ModelStamp
    sequence: int
    skipped: int
    layer: str
    unit: int
    maps: QuantizedMaps
    unit_map: Tensor
    predictions: _containers.RepeatedCompositeFieldContainer[Prediction]
    compute_ms: float
    error: ItemError
    def __init__(self, stamp: _Optional[_Union[ModelStamp, _Mapping]] = ..., sequence: _Optional[int] = ..., skipped: _Optional[int] = ..., layer: _Optional[str] = ..., unit: _Optional[int] = ..., maps: _Optional[_Union[QuantizedMaps, _Mapping]] = ..., unit_map: _Optional[_Union[Tensor, _Mapping]] = ..., predictions: _Optional[_Iterable[_Union[Prediction, _Mapping]]] = ..., compute_ms: _Optional[float] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...
