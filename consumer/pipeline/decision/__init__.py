"""What one change needs done in Zoho: the policy, parents first, the entity map's values and full row
images. Pure.
"""
