"""The notifier: routes alerts, groups and silences them, and delivers them by email, webhook and chat."""
