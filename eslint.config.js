import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "node_modules/", "coverage/", "k6/", "envoy/rendered/", ".dev/"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    // The admin console's browser modules (console/app.js, shared.js, pages/): no bundler, no globals package.
    files: ["console/**/*.js"],
    languageOptions: {
      sourceType: "module",
      globals: Object.fromEntries(
        [
          "document",
          "window",
          "location",
          "sessionStorage",
          "fetch",
          "Node",
          "HTMLElement",
          "URLSearchParams",
        ].map((name) => [name, "readonly"]),
      ),
    },
  },
  {
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_" }],
      "no-constant-condition": ["error", { checkLoops: false }],
    },
  },
);
