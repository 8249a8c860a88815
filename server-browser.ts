// What a bundler gets for `llama2-webgpu/server` under the `browser` condition: the HTTP server needs
// Node's or Deno's built-ins, so a page importing it fails at once with a message saying what to use.
throw new Error("llama2-webgpu/server (the HTTP server) runs in Node and Deno only; in a page, import from 'llama2-webgpu'");
