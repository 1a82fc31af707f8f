"""`orpo-dist export RUN`: a run's model as a merged HF folder, a GGUF file and an Ollama Modelfile.

Flow: run folder -> merged model in memory (source.py, merge.py) -> HF folder (merge.py) and/or
GGUF (gguf_vocab.py, gguf_writer.py) + Modelfile (chat_template.py, modelfile.py). Every file
is written under a temporary name and renamed when complete (atomic.py).
"""
