"""cardiac_mi: find and measure myocardial infarction in cardiac LGE MRI (the product's commands)."""

__version__ = "0.1.0"
