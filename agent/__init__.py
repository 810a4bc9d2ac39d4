"""A LiveKit Agents voice agent whose speech-to-text is a choice, not a rewrite."""
