"""mynabox: the firmware of the マイナ救急 card reader box."""

__version__ = "0.1.0"
