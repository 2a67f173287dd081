"""enas: Efficient Neural Architecture Search via Parameter Sharing (Pham et al., 2018) in PyTorch."""

__version__ = "0.1.0"
