"""The model both the pipeline and the entity specs read: decoded change events, plans and outcomes. Pure
values.
"""
