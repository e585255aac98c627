"""Analysis: model FLOPs and MFU (`flops`), plots of run metrics (`plots`).

Submodules are imported on use so that `import wavejax.analysis` stays free of matplotlib.
"""
