// The drawing surface: brush and eraser strokes from pointer events (mouse, pen and
// touch), clear and undo. Dispatches "change" after every change to the picture and
// "history" when undo becomes possible or impossible.

const PAPER = "#ffffff";

export class DrawingSurface extends EventTarget {
  constructor(canvas, { historyLimit = 40 } = {}) {
    super();
    this.canvas = canvas;
    this.ctx = canvas.getContext("2d", { willReadFrequently: true });
    this.tool = "brush";
    this.color = "#1f2937";
    this.size = 10;
    this.historyLimit = historyLimit;
    this.history = [];
    this.pointer = null; // the pointer drawing now: { id, x, y }
    this.fill();
    canvas.addEventListener("pointerdown", (e) => this.down(e));
    canvas.addEventListener("pointermove", (e) => this.move(e));
    canvas.addEventListener("pointerup", (e) => this.up(e));
    canvas.addEventListener("pointercancel", (e) => this.up(e));
    canvas.addEventListener("lostpointercapture", (e) => this.up(e));
    canvas.addEventListener("contextmenu", (e) => e.preventDefault());
  }

  get canUndo() {
    return this.history.length > 0;
  }

  fill() {
    this.ctx.save();
    this.ctx.globalCompositeOperation = "source-over";
    this.ctx.fillStyle = PAPER;
    this.ctx.fillRect(0, 0, this.canvas.width, this.canvas.height);
    this.ctx.restore();
  }

  snapshot() {
    this.history.push(this.ctx.getImageData(0, 0, this.canvas.width, this.canvas.height));
    if (this.history.length > this.historyLimit) this.history.shift();
    this.dispatchEvent(new Event("history"));
  }

  changed() {
    this.dispatchEvent(new Event("change"));
  }

  clear() {
    this.snapshot();
    this.fill();
    this.changed();
  }

  undo() {
    const previous = this.history.pop();
    if (!previous) return;
    this.ctx.putImageData(previous, 0, 0);
    this.dispatchEvent(new Event("history"));
    this.changed();
  }

  point(event) {
    const rect = this.canvas.getBoundingClientRect();
    const x = ((event.clientX - rect.left) * this.canvas.width) / rect.width;
    const y = ((event.clientY - rect.top) * this.canvas.height) / rect.height;
    // a pen's pressure thins and thickens the line; mouse and touch draw at full size
    const pressure = event.pointerType === "pen" && event.pressure > 0 ? 0.35 + event.pressure * 0.9 : 1;
    return { x, y, width: Math.max(1, this.size * pressure) };
  }

  down(event) {
    if (this.pointer || (event.pointerType === "mouse" && event.button !== 0)) return;
    event.preventDefault();
    this.canvas.setPointerCapture?.(event.pointerId);
    this.snapshot();
    const p = this.point(event);
    this.pointer = { id: event.pointerId, ...p };
    this.segment(p, p);
    this.changed();
  }

  move(event) {
    if (!this.pointer || event.pointerId !== this.pointer.id) return;
    event.preventDefault();
    const events = event.getCoalescedEvents?.() ?? [];
    for (const e of events.length ? events : [event]) {
      const p = this.point(e);
      this.segment(this.pointer, p);
      Object.assign(this.pointer, p);
    }
    this.changed();
  }

  up(event) {
    if (!this.pointer || event.pointerId !== this.pointer.id) return;
    this.pointer = null;
    this.canvas.releasePointerCapture?.(event.pointerId);
  }

  segment(from, to) {
    const ctx = this.ctx;
    ctx.save();
    ctx.globalCompositeOperation = "source-over";
    ctx.strokeStyle = this.tool === "eraser" ? PAPER : this.color;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = this.tool === "eraser" ? Math.max(to.width, 8) * 1.5 : to.width;
    ctx.beginPath();
    ctx.moveTo(from.x, from.y);
    ctx.lineTo(to.x + (from === to ? 0.01 : 0), to.y);
    ctx.stroke();
    ctx.restore();
  }

  /** The picture as an encoded image (JPEG by default). */
  encode(type = "image/jpeg", quality = 0.9) {
    return new Promise((resolve, reject) => {
      this.canvas.toBlob(
        (blob) => (blob ? resolve(blob) : reject(new Error("the canvas could not be encoded"))),
        type,
        quality,
      );
    });
  }
}
