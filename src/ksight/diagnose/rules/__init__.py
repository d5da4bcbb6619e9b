"""Rules, one module per area. Each module registers its rules with @rule on import."""
