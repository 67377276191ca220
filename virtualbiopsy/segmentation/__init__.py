"""The NeuroblastomaSeg library: agreement metrics between an AI and a corrected tumour mask, and
export of corrected cases as an nnU-Net v2 dataset for retraining (the correction loop)."""
