"""Text-artifact cleanup: detect burned-in text and markers, segment them, inpaint them, verify the result."""
