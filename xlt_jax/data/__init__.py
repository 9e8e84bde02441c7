"""Host-side data: datasets on disk, readers, tokenizer, transformations, pipelines."""
