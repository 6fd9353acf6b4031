"""The per-RPC code, one module per domain; importing the package registers every handler.

- :mod:`.models`: ListModels, DescribeModel, GetServerInfo, Classify, Activations, Kernels
- :mod:`.attribution`: Saliency
- :mod:`.attacks`: Attack, MinimalAttack, AttackDataset
- :mod:`.synthesis`: VisualizeFilter, DeepDream, InterpolateFeatures
- :mod:`.dataset_views`: ListDatasets, BuildIndex, TopActivations, NearestNeighbors, DatasetImages, ListPrecomputed
- :mod:`.embeddings`: Embedding, PlaceImages
- :mod:`.live`: Watch (bidirectional: a layer's maps per frame)

:mod:`.base` holds the registry and what the modules share.
"""

from server.handlers import attacks, attribution, dataset_views, embeddings, live, models, synthesis
from server.handlers.base import HANDLERS, Handler, Live, Streamed

__all__ = [
    "HANDLERS",
    "Handler",
    "Live",
    "Streamed",
    "attacks",
    "attribution",
    "dataset_views",
    "embeddings",
    "live",
    "models",
    "synthesis",
]
