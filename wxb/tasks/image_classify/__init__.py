"""Classifying images and feature vectors with an MLP or a CNN (task ``image-classify``;
``train``)."""
