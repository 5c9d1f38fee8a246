"""mynabox.testing."""
