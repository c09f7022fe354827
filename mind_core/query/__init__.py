"""Reading a built KB: facets, keyword / semantic / hybrid search, product lookups, aggregations."""
