"""Text classification (task ``text-classify``): fine-tuning in ``train``, the model section and
the classifier it builds in ``model``, the classifier that serves a trained folder in
``pipeline``."""
