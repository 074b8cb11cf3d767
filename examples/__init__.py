"""Worked examples of extending compression-bench from outside its registries (see README, "Your model, your data")."""
