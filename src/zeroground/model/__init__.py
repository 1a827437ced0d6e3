"""The grounding models: PSVL's cross-modality two-stage attention network and the seed LFVMR's
network (``ARCHITECTURES``, chosen by ``model.architecture``).

Importing this package does not import the trainer (``zeroground.train``).
"""

from zeroground.model.architectures import ARCHITECTURES, build_model
from zeroground.model.config import LFVMRConfig, Readout
from zeroground.model.model_dir import (
    ModelDirError,
    import_lfvmr,
    import_psvl,
    load_model_dir,
    model_readout,
    read_model_config,
    save_model_dir,
)
from zeroground.model.predict import SpanPredictions, check_feature_dim, predict_spans, query_batch
from zeroground.model.preprocess import EmptyQueryError, build_vocab, encode_queries, segment_batch
from zeroground.model.psvl import (
    QUERY_ENCODERS,
    GroundingModel,
    ModelConfig,
    QueryBatch,
    attention_spans,
    grounding_loss,
)

__all__ = [
    "ARCHITECTURES", "build_model", "LFVMRConfig", "Readout", "import_lfvmr",
    "QUERY_ENCODERS", "GroundingModel", "ModelConfig", "QueryBatch", "grounding_loss", "attention_spans",
    "save_model_dir", "load_model_dir", "read_model_config", "model_readout", "import_psvl", "ModelDirError",
    "predict_spans", "SpanPredictions", "query_batch", "check_feature_dim",
    "build_vocab", "encode_queries", "segment_batch", "EmptyQueryError",
]
