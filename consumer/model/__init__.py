"""The model both the pipeline and the entity specs read: decoded change events, plans, how a Zoho call
can fail, and outcomes. Pure values.
"""
