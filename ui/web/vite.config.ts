import { defineConfig } from "vite";

// Fixed output names: the Rust binary embeds exactly dist/index.html,
// dist/assets/app.js and dist/assets/app.css (ui/src/assets.rs).
export default defineConfig({
  base: "/",
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    cssCodeSplit: false,
    modulePreload: false,
    rollupOptions: {
      output: {
        entryFileNames: "assets/app.js",
        chunkFileNames: "assets/app-[name].js",
        assetFileNames: "assets/app[extname]",
      },
    },
  },
});
