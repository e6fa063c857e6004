"""Sources and sinks around the one pipeline: images and video frames in; JSON Lines, anonymised or annotated
videos out; the anonymiser and the temporal smoothing between."""
