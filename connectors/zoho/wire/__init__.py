"""One Zoho call on the wire: the HTTP pool, the transport that maps replies to errors, retries, protocol
facts.
"""
