"""Local stand-ins for the messaging platforms: each speaks its platform's documented wire
format (payload shapes, signatures, errors) on 127.0.0.1, so adapters cannot tell them from
the real thing. Tests point a channel's ``api_base`` at ``fake.url``."""
