"""The database layer: engines and their connection hooks (engine.py), the session and what it
notes per statement (session.py), replica routing and read-your-writes (replicas.py), riding out
a failover (failover.py), and the one list of what runs after a commit (after_commit.py)."""
