"""The reference gateway side: what runs on the ambulance's onboard gateway, not on the box.

The daemon never imports this package (it would only cost memory there); `mynabox receive` and the tests do.
"""
