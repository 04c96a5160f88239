"""The models, one file per family; ``registry`` maps ``model_type`` to classes."""
