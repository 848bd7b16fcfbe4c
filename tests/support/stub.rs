//! (the stub LM server lands with the LM layer)
