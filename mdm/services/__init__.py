"""Every write of the mdm app.  Views, commands and tasks call these; nothing else writes."""
