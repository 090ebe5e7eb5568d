"""The embedded sample: a talking clip built from what ships in our dependencies."""
