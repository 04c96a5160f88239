"""Text classification (task ``text-classify``): fine-tuning in ``train``, the classifier in
``pipeline``."""
