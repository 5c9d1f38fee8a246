"""mynabox.payload."""
