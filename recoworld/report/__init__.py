"""Study reports (self-contained HTML) and the local session replay viewer."""
