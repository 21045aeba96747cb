"""Pixel I/O with no Django: read DICOM/PNG/JPEG, normalise for blinded serving, write PNG and DICOM."""
