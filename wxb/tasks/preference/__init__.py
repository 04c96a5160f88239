"""Training on preference pairs: DPO (task ``dpo``) and reward models (task ``reward``), in
``train``."""
