"""Finding the Zoho record a source entity already has before creating one.

In order: the stored id, the match rules, and claims so one record is adopted by one entity.
"""
