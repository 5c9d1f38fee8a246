"""The application layer: the workers that run a read (card, lookup, delivery) and their timing.

Between the pure core (decisions, rendering, sealing) and the adapters (pcscd, HTTP, MQTT, OLED): it drives
the card protocol against a reader, owns a read's certificate until it is delivered, and reports events.
"""
