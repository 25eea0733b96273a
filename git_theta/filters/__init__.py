"""Git's filters: clean (checkpoint -> metadata) and smudge (metadata -> checkpoint), bytes in and bytes out."""
