"""mynabox.adapters."""
