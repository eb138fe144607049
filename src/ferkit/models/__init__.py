"""Model zoo: ``create_model(name, num_classes, in_chans, input_size)`` builds any registered architecture."""
from ferkit.models.registry import create_model, get_entry, list_models, register_model

__all__ = ["create_model", "get_entry", "list_models", "register_model"]
