import { consistencyProperty, oneNode } from "./property.ts";

consistencyProperty("one node", oneNode, 50, 100);
