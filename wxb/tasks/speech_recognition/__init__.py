"""Speech recognition: Whisper fine-tuned or trained from scratch on speech, scored by WER / CER."""
