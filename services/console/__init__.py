"""The crisis console (issue 16): alerts and what was done about them, silences, live mentions, corrections."""
