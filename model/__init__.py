"""VTFPAR++ network, presets, attribute schemas, shared preprocessing and the checkpoint format."""

from .backbone import BackboneError
from .checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint, save_checkpoint
from .config import ConfigError, VTFPARConfig, get_config, list_presets
from .network import VTFPAR, create_model
from .preprocess import Preprocess, sample_frame_indices
from .schema import Attribute, AttributeSchema, Group, SchemaError, list_schemas, load_schema, schema_from_dict

__all__ = [
    "Attribute",
    "AttributeSchema",
    "BackboneError",
    "CheckpointError",
    "ConfigError",
    "Group",
    "LoadedCheckpoint",
    "Preprocess",
    "SchemaError",
    "VTFPAR",
    "VTFPARConfig",
    "create_model",
    "get_config",
    "list_presets",
    "list_schemas",
    "load_checkpoint",
    "load_schema",
    "sample_frame_indices",
    "save_checkpoint",
    "schema_from_dict",
]
