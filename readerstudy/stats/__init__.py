"""Observer-study statistics in pure numpy/scipy (no Django): proportions, ROC/AUC, MRMC, agreement, power."""
