// A form for a pipeline's params, generated from its JSON schema (as pydantic
// writes it): enums become menus, bounded numbers sliders, booleans checkboxes,
// strings text fields; optional values (anyOf with null) get a "default" choice.
// Calls onChange({ key: value }) for each change the user makes.

function resolve(schema, root) {
  let node = schema ?? {};
  for (let i = 0; i < 8 && node.$ref; i += 1) {
    const path = node.$ref.replace(/^#\//, "").split("/");
    node = path.reduce((at, part) => at?.[part], root) ?? {};
  }
  if (node.allOf?.length === 1) return { ...node, ...resolve(node.allOf[0], root), allOf: undefined };
  return node;
}

/** How one property is edited: { kind, options, min, max, step, nullable, ... } */
export function describeField(key, raw, root) {
  let schema = resolve(raw, root);
  let nullable = false;
  const variants = schema.anyOf ?? schema.oneOf;
  if (variants) {
    const others = variants.map((v) => resolve(v, root)).filter((v) => v.type !== "null");
    nullable = others.length < variants.length;
    if (others.length === 1) schema = { ...others[0], ...schema, anyOf: undefined, oneOf: undefined, type: others[0].type };
    else return { key, kind: "unsupported", title: raw.title ?? key };
  }
  const field = {
    key,
    title: schema.title ?? raw.title ?? key,
    description: schema.description ?? raw.description ?? "",
    default: raw.default ?? schema.default,
    nullable,
  };
  if (Array.isArray(schema.enum)) return { ...field, kind: "enum", options: schema.enum };
  if (schema.const !== undefined) return { ...field, kind: "enum", options: [schema.const] };
  if (schema.type === "boolean") return { ...field, kind: "boolean" };
  if (schema.type === "integer" || schema.type === "number") {
    const min = schema.minimum ?? (schema.exclusiveMinimum !== undefined ? schema.exclusiveMinimum : undefined);
    const max = schema.maximum ?? (schema.exclusiveMaximum !== undefined ? schema.exclusiveMaximum : undefined);
    const integer = schema.type === "integer";
    const bounded = min !== undefined && max !== undefined;
    let step = integer ? 1 : 0.01;
    if (!integer && bounded) step = max - min > 10 ? 0.1 : 0.01;
    return { ...field, kind: bounded ? "range" : "number", integer, min, max, step };
  }
  if (schema.type === "string") return { ...field, kind: "text" };
  return { ...field, kind: "unsupported" };
}

function formatNumber(value, field) {
  if (value === null || value === undefined || Number.isNaN(value)) return "–";
  if (field.integer) return String(Math.round(value));
  return field.step < 0.1 ? Number(value).toFixed(2) : Number(value).toFixed(1);
}

export class ParamsForm {
  constructor(form, onChange) {
    this.form = form;
    this.onChange = onChange;
    this.fields = [];
    this.controls = new Map();
    this.timers = new Map();
    form.addEventListener("submit", (e) => e.preventDefault());
  }

  /** Build the form for `schema`, showing `values` (defaults where absent). */
  render(schema, values = {}) {
    this.form.replaceChildren();
    this.controls.clear();
    const properties = schema?.properties ?? {};
    this.fields = Object.entries(properties).map(([key, raw]) => describeField(key, raw, schema));
    if (!this.fields.length) {
      const empty = document.createElement("p");
      empty.className = "empty";
      empty.textContent = "This pipeline takes no parameters.";
      this.form.append(empty);
      return;
    }
    for (const field of this.fields) {
      const element = this.build(field);
      if (element) this.form.append(element);
    }
    this.show(values);
  }

  /** The schema's defaults. */
  defaults() {
    return Object.fromEntries(this.fields.filter((f) => f.kind !== "unsupported").map((f) => [f.key, f.default ?? null]));
  }

  /** Show `values` in the controls (defaults for keys it lacks). */
  show(values) {
    for (const field of this.fields) {
      const control = this.controls.get(field.key);
      if (!control) continue;
      const value = field.key in values ? values[field.key] : field.default;
      control.set(value);
    }
  }

  emit(key, value, delay = 0) {
    clearTimeout(this.timers.get(key));
    if (!delay) {
      this.onChange({ [key]: value });
      return;
    }
    this.timers.set(key, setTimeout(() => this.onChange({ [key]: value }), delay));
  }

  build(field) {
    const id = `param-${field.key}`;
    const wrap = document.createElement("div");
    wrap.className = "field";
    wrap.dataset.key = field.key;
    if (field.description) wrap.title = field.description;

    if (field.kind === "boolean") {
      const label = document.createElement("label");
      label.className = "check";
      const input = document.createElement("input");
      input.type = "checkbox";
      input.id = id;
      input.name = field.key;
      input.addEventListener("change", () => this.emit(field.key, input.checked));
      label.append(input, document.createTextNode(field.title));
      wrap.append(label);
      this.controls.set(field.key, { set: (v) => (input.checked = Boolean(v)) });
      return wrap;
    }

    const label = document.createElement("label");
    label.className = "label";
    label.htmlFor = id;
    const name = document.createElement("span");
    name.textContent = field.title;
    label.append(name);
    wrap.append(label);

    if (field.kind === "enum") {
      const select = document.createElement("select");
      select.id = id;
      select.name = field.key;
      if (field.nullable) {
        const option = document.createElement("option");
        option.value = "";
        option.textContent = "default";
        select.append(option);
      }
      for (const value of field.options) {
        const option = document.createElement("option");
        option.value = String(value);
        option.textContent = String(value);
        select.append(option);
      }
      select.addEventListener("change", () => {
        const picked = field.options.find((o) => String(o) === select.value);
        this.emit(field.key, select.value === "" && field.nullable ? null : picked);
      });
      wrap.append(select);
      this.controls.set(field.key, { set: (v) => (select.value = v === null || v === undefined ? "" : String(v)) });
      return wrap;
    }

    if (field.kind === "range") {
      const value = document.createElement("span");
      value.className = "value";
      label.append(value);
      const input = document.createElement("input");
      input.type = "range";
      input.id = id;
      input.name = field.key;
      input.min = String(field.min);
      input.max = String(field.max);
      input.step = String(field.step);
      const read = () => (field.integer ? parseInt(input.value, 10) : parseFloat(input.value));
      input.addEventListener("input", () => {
        value.textContent = formatNumber(read(), field);
        this.emit(field.key, read(), 120); // while sliding: at most one change per 120 ms
      });
      input.addEventListener("change", () => this.emit(field.key, read()));
      wrap.append(input);
      this.controls.set(field.key, {
        set: (v) => {
          const number = v === null || v === undefined ? field.min : Number(v);
          input.value = String(number);
          value.textContent = v === null || v === undefined ? "default" : formatNumber(number, field);
        },
      });
      return wrap;
    }

    if (field.kind === "number" || field.kind === "text") {
      const input = document.createElement("input");
      input.type = field.kind === "number" ? "number" : "text";
      input.id = id;
      input.name = field.key;
      if (field.kind === "number") {
        input.step = field.integer ? "1" : "any";
        if (field.min !== undefined) input.min = String(field.min);
        if (field.max !== undefined) input.max = String(field.max);
      }
      input.addEventListener("change", () => {
        let v = input.value;
        if (field.kind === "number") v = v === "" ? null : Number(v);
        else if (v === "" && field.nullable) v = null;
        this.emit(field.key, v);
      });
      wrap.append(input);
      this.controls.set(field.key, { set: (v) => (input.value = v === null || v === undefined ? "" : String(v)) });
      return wrap;
    }

    const note = document.createElement("p");
    note.className = "hint";
    note.textContent = "Not editable here.";
    wrap.append(note);
    return wrap;
  }
}
