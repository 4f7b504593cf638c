"""OAuth with Zoho's accounts servers: access tokens cached and refreshed once, grant codes, data centres."""
