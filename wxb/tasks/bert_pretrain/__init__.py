"""BERT pretraining (task ``bert-pretrain``, ``train``) and what it brings to fine-tuning (task
``pretrain-finetune``, ``then_finetune``)."""
